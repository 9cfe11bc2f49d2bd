//! Integration tests of kiln-scan.
