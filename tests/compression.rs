//! Compression (written below).
