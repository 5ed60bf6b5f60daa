"""statekeel benchmark suite (not part of the installed package). See README.md."""
