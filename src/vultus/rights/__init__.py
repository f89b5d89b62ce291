"""Rights and governance: audit, access, erasure, suppression, restriction, retention, crypto,
reports. Each module holds one obligation; the Engine calls them."""
