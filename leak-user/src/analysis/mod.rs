//! What series of readings say: [`trend`] is the one verdict rule (leaking,
//! growing, steady, shrinking, churn) shared by processes and stacks,
//! [`growth`] keeps each stack's series, [`series`] bounds them.

pub(crate) mod growth;
pub(crate) mod series;
pub(crate) mod trend;
