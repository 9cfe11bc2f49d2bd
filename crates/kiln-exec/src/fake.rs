//! TODO(helper): fake
