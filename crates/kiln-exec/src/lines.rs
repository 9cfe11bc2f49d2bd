//! TODO(helper): lines
