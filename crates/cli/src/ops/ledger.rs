//! `coffer ledger`: the job ledger kept in the repository.
