"""Data-protection documents and rules: erasure plans and receipts, access packages, the
Art. 30/35 reports, the request workflow's dates, and the suppression list. The Engine's
rights and governance mixins (`vultus.engine.rights`, `vultus.engine.governance`) call them."""
