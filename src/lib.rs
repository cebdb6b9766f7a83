//! siglipd: zero-shot scene labelling with SigLIP on small devices.
//!
//! Data flows `model::preprocess` (image → pixel tensor) → `model::vision` / `model::text`
//! (tract encoders) → `classify` (cosine → sigmoid per label). See ARCHITECTURE.md.

pub mod app;
pub mod bench;
pub mod calibrate;
pub mod classify;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod decide;
pub mod embeddings;
pub mod engine;
pub mod examples;
pub mod examples_cmd;
pub mod history;
pub mod host;
pub mod http;
pub mod ids;
pub mod labels;
pub mod live;
pub mod logging;
pub mod model;
pub mod pull;
pub mod signals;
pub mod sink;
pub mod source;
pub mod state;
pub mod teach;
