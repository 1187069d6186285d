"""Keep a library: the photo folders and their indexing, and which model searches them (its
codes kept up to date)."""
