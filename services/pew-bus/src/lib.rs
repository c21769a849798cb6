//! D-Bus contract
