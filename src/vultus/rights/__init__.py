"""Data-protection documents and rules: erasure plans and receipts, access packages, the
Art. 30/35 reports, the request workflow's dates, and the suppression list. The Engine's
finding, rights, requests and governance mixins (`vultus.engine.*`) call them."""
