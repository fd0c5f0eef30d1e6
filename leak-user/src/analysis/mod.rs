//! What series of readings say: [`trend`] is the one verdict rule (leaking,
//! growing, steady, shrinking, churn) shared by processes and stacks,
//! [`growth`] keeps each stack's series, [`series`] bounds them.

pub mod growth;
pub mod series;
pub mod trend;
