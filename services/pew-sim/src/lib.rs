//! Simulated node hardware replaying real measured weather.
