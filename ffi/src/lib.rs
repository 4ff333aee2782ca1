//! C ABI for juxmem (`libjuxmem`). Not yet populated: see the C ABI issue.
