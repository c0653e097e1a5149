//! End-to-end tests of Worldloom: one binary, one module per topic.

mod api;
mod authoring;
mod cache;
mod cli;
mod cluster;
mod determinism;
mod examples;
mod faults;
mod golden;
mod hostile;
mod load;
mod openapi;
mod persistence;
mod plugins;
mod reliability;
mod s3;
mod stream;
mod viewer;
mod workshop;
