"""Result files, tables and comparisons."""
