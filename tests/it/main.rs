//! End-to-end tests of Worldloom: one binary, one module per topic.

mod api;
mod cli;
mod cluster;
mod determinism;
mod golden;
mod persistence;
mod plugins;
mod s3;
mod stream;
mod workshop;
