-- Lockout as a weapon: wrong passwords from addresses that never signed in to an account lock
-- out those addresses (failed_login_count / locked_until, the blueprint's 5 failures → 30
-- minutes); an address that has signed in to the account within 30 days has its own count and
-- lock, so a stranger's guesses do not keep the owner out.
alter table adm_user add column known_fails int not null default 0;
alter table adm_user add column known_unlock_at timestamptz;
