"""The feedback store: the only package that speaks SQL (see ``repository.Store``)."""
