import numpy as np
import pytest

from engine.codes import SUPPORTED_BITS, hamming_reference, pack_codes, unpack_codes
from engine.errors import ConfigError


@pytest.mark.parametrize("bits", SUPPORTED_BITS)
def test_pack_unpack_round_trip_and_sign_rule(bits):
    rng = np.random.default_rng(bits)
    values = rng.normal(size=(7, bits)).astype(np.float32)
    values[0, :3] = 0.0  # zero maps to bit 0
    codes = pack_codes(values)
    assert codes.dtype == np.uint8 and codes.shape == (7, bits // 8)
    np.testing.assert_array_equal(unpack_codes(codes, bits), (values > 0).astype(np.uint8))
    assert unpack_codes(codes, bits)[0, :3].sum() == 0


def test_hamming_reference_matches_bit_count():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(5, 64))
    b = rng.normal(size=(9, 64))
    expected = np.array([[int(((x > 0) != (y > 0)).sum()) for y in b] for x in a])
    np.testing.assert_array_equal(hamming_reference(pack_codes(a), pack_codes(b)), expected)


@pytest.mark.parametrize("bits", [8, 48, 512])
def test_unsupported_code_length_is_refused(bits):
    with pytest.raises(ConfigError, match="not supported"):
        pack_codes(np.ones((2, bits)))
