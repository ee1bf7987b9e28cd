//! Moldau's HTTP API.
