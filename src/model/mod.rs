//! The SigLIP model: bundle manifest, image preprocessing, tokenization and the two tract towers.
//!
//! Invariant: everything that depends on the checkpoint (image size, mean/std, pad id, logit
//! scale/bias, tensor names) is read from the bundle's manifest, never assumed.

pub mod auto;
pub mod bmp;
pub mod bundle;
pub mod encoder;
pub mod fast_batch;
pub mod fast_cast;
pub mod fast_pack;
pub mod gif;
pub mod onnx_read;
pub mod orient;
pub mod preprocess;
pub mod shape;
pub mod swap;
pub mod tokenize;
pub mod trns;

pub use bundle::{Bundle, ModelError, Precision, PrecisionChoice, Tower};
pub use encoder::{TextEncoder, VisionEncoder};
pub use preprocess::{ImageError, Preprocessor};
pub use tokenize::TextTokenizer;
