//! Security events recorded (state and ledger outbox), acknowledged and listed. (Issue 14: to be built.)
