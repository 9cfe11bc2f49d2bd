//! TODO(helper): conformance
