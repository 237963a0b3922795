//! What an operator looks at: the health endpoint and status verdicts,
//! the dashboards and alert rules, the systemd view of the units, and the
//! provisioning of InfluxDB.

pub mod dashboards;
pub mod health;
pub mod provision;
pub mod systemd_view;
