//! Reading an ONNX file into tract without holding its weights twice.
//!
//! tract's `model_for_path` decodes the whole `ModelProto` (every weight copied out of the file
//! into a protobuf buffer) and then copies each weight again into a tensor: while parsing, the
//! process holds file pages + protobuf copies + tensors, ≈ 2× the weights (an fp32 base tower
//! peaked at ≈ 760 MB for 372 MB of weights; docs/profile-int8.md, "Memory").
//!
//! This reader walks the file as protobuf wire format (<https://protobuf.dev/programming-guides/encoding/>)
//! and decodes every field except the initializers' `raw_data` as usual. Each `raw_data` of at
//! least [`EXTERNAL_MIN_BYTES`] becomes ONNX *external data* that points back into the same file
//! (onnx.proto, `TensorProto.external_data`: `location`, `offset`, `length`;
//! <https://onnx.ai/onnx/repo-docs/ExternalData.html>), which tract loads one tensor at a time
//! through [`SameFileResolver`] (positional reads from the file already open). The model tract
//! builds is the same: the bytes of every tensor are the bytes `model_for_path` would copy.
//!
//! Only what ONNX files written by torch, onnxruntime and our exporter contain is handled:
//! `ModelProto.graph` (field 7) → `GraphProto.initializer` (field 5) → `TensorProto.raw_data`
//! (field 9). Anything the walk does not expect (a second graph, group wire types, a tensor that
//! is both inline and external) is a [`ReadError::Unexpected`]; callers then fall back to tract's
//! own reader, which gives the file's real error if it has one.
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, ensure, Context};
use prost::Message;
use tract_onnx::data_resolver::ModelDataResolver;
use tract_onnx::pb;
use tract_onnx::prelude::*;

/// Weights smaller than this stay inline (biases, LayerNorm affines, scales): reading them
/// one by one would cost more than holding them twice.
pub const EXTERNAL_MIN_BYTES: u64 = 64 * 1024;

// field numbers in onnx.proto (onnx/onnx.proto, ModelProto / GraphProto / TensorProto)
const MODEL_GRAPH: u64 = 7;
const GRAPH_INITIALIZER: u64 = 5;
const TENSOR_RAW_DATA: u64 = 9;

// protobuf wire types
const VARINT: u64 = 0;
const I64: u64 = 1;
const LEN: u64 = 2;
const I32: u64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// Something this reader does not walk; tract's own reader may still take the file.
    #[error("{0}")]
    Unexpected(String),
    #[error("protobuf: {0}")]
    Decode(#[from] prost::DecodeError),
}

/// An ONNX model read with its large weights left in the file, and what that saved.
pub struct LeanModel {
    pub proto: pb::ModelProto,
    /// Weights referenced in place (bytes not copied into the protobuf).
    pub external_bytes: u64,
    pub external_tensors: usize,
    resolver: Arc<SameFileResolver>,
    model_dir: String,
}

impl LeanModel {
    /// Reads `path`'s protobuf without the large initializers' bytes.
    ///
    /// Errors: [`ReadError::Io`] when the file cannot be opened or read, [`ReadError::Unexpected`]
    /// or [`ReadError::Decode`] when it is not protobuf this walk understands.
    pub fn read(path: &Path) -> Result<Self, ReadError> {
        Self::read_with(path, EXTERNAL_MIN_BYTES)
    }

    /// [`LeanModel::read`] with every `raw_data` of at least `min_bytes` left in the file.
    pub fn read_with(path: &Path, min_bytes: u64) -> Result<Self, ReadError> {
        let io_err = |source| ReadError::Io { path: path.to_path_buf(), source };
        // tract resolves external data inside the model's canonical directory: name the file by
        // its canonical path so a symlinked bundle (a hub cache) still resolves
        let canonical = path.canonicalize().map_err(io_err)?;
        let (Some(dir), Some(name)) = (canonical.parent(), canonical.file_name()) else {
            return Err(ReadError::Unexpected(format!("{} has no file name", canonical.display())));
        };
        let (Some(dir), Some(name)) = (dir.to_str(), name.to_str()) else {
            return Err(ReadError::Unexpected(format!("{} is not valid UTF-8", canonical.display())));
        };
        let file = File::open(&canonical).map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();
        let mut walk = Walk {
            r: BufReader::with_capacity(1 << 16, file.try_clone().map_err(io_err)?),
            pos: 0,
            location: name.to_string(),
            min_bytes,
            external_bytes: 0,
            external_tensors: 0,
        };
        let proto = walk.model(len).map_err(|e| match e {
            WalkError::Io(source) => io_err(source),
            WalkError::Read(e) => e,
        })?;
        Ok(Self {
            proto,
            external_bytes: walk.external_bytes,
            external_tensors: walk.external_tensors,
            resolver: Arc::new(SameFileResolver { path: canonical.clone(), file }),
            model_dir: dir.to_string(),
        })
    }

    /// The tract model, its weights read from the file one tensor at a time.
    ///
    /// Errors: tract's, as `model_for_path` gives them (an unknown op, a bad tensor).
    pub fn into_inference_model(self) -> TractResult<InferenceModel> {
        let mut onnx = tract_onnx::onnx();
        onnx.provider = self.resolver.clone();
        let parsed = onnx.parse(&self.proto, Some(&self.model_dir))?;
        if !parsed.unresolved_inputs.is_empty() {
            bail!("could not resolve inputs at top level: {:?}", parsed.unresolved_inputs)
        }
        Ok(parsed.model)
    }
}

/// Reads `path` into a tract model, holding each weight once ([`LeanModel`]); files this
/// reader does not walk go to tract's `model_for_path`.
///
/// Returns the model and whether the lean path was taken (false: tract's reader was used).
pub fn read_inference_model(path: &Path) -> TractResult<(InferenceModel, bool)> {
    match LeanModel::read(path) {
        Ok(lean) => Ok((lean.into_inference_model()?, true)),
        Err(e @ ReadError::Io { .. }) => Err(e.into()),
        Err(e) => {
            // memory doubles on this path again: worth seeing in the log
            tracing::warn!(path = %path.display(), "reading the model with tract's reader, which holds each weight twice while loading: {e}");
            Ok((tract_onnx::onnx().model_for_path(path)?, false))
        }
    }
}

/// Serves tract's external-data reads of the model file from the handle already open (so the
/// weights come from the very file the walk read, even if it is renamed over meanwhile), with
/// positional reads (no shared file position).
pub struct SameFileResolver {
    path: PathBuf,
    file: File,
}

impl ModelDataResolver for SameFileResolver {
    fn read_bytes_from_path(&self, buf: &mut Vec<u8>, p: &Path, offset: usize, length: Option<usize>) -> TractResult<()> {
        // the walk refuses files with external data of their own (they go to tract's reader)
        ensure!(p == self.path, "external data in {} while reading {}", p.display(), self.path.display());
        let length = length.context("external data without a length")?;
        // zeroed by the allocator (calloc: fresh pages, no pass over them), then read in place;
        // the walk took offset and length from the file, so they lie within it
        let mut data = vec![0u8; length];
        self.file
            .read_exact_at(&mut data, offset as u64)
            .with_context(|| format!("reading {length} bytes at byte {offset} of {}", p.display()))?;
        *buf = data;
        Ok(())
    }
}

enum WalkError {
    Io(io::Error),
    Read(ReadError),
}

impl From<io::Error> for WalkError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<prost::DecodeError> for WalkError {
    fn from(e: prost::DecodeError) -> Self {
        Self::Read(e.into())
    }
}

fn unexpected(what: String) -> WalkError {
    WalkError::Read(ReadError::Unexpected(what))
}

/// A forward walk over the file's protobuf fields; `pos` is the offset of the next byte.
struct Walk {
    r: BufReader<File>,
    pos: u64,
    location: String,
    min_bytes: u64,
    external_bytes: u64,
    external_tensors: usize,
}

impl Walk {
    fn model(&mut self, end: u64) -> Result<pb::ModelProto, WalkError> {
        let mut rest = Vec::new();
        let mut graph = None;
        while self.pos < end {
            let (field, wire) = self.tag()?;
            if field == MODEL_GRAPH && wire == LEN {
                if graph.is_some() {
                    return Err(unexpected("two graph fields in one model".into()));
                }
                let len = self.varint()?;
                graph = Some(self.graph(self.end_of(len, end)?)?);
            } else {
                self.copy_field(field, wire, end, &mut rest)?;
            }
        }
        let mut model = pb::ModelProto::decode(&rest[..])?;
        model.graph = graph;
        Ok(model)
    }

    fn graph(&mut self, end: u64) -> Result<pb::GraphProto, WalkError> {
        let mut rest = Vec::new();
        let mut initializers = Vec::new();
        while self.pos < end {
            let (field, wire) = self.tag()?;
            if field == GRAPH_INITIALIZER && wire == LEN {
                let len = self.varint()?;
                initializers.push(self.tensor(self.end_of(len, end)?)?);
            } else {
                self.copy_field(field, wire, end, &mut rest)?;
            }
        }
        self.at(end)?;
        let mut graph = pb::GraphProto::decode(&rest[..])?;
        graph.initializer = initializers;
        Ok(graph)
    }

    fn tensor(&mut self, end: u64) -> Result<pb::TensorProto, WalkError> {
        let mut rest = Vec::new();
        let mut raw = None;
        let mut seen_raw = false;
        while self.pos < end {
            let (field, wire) = self.tag()?;
            if field == TENSOR_RAW_DATA && wire == LEN {
                let len = self.varint()?;
                let data_end = self.end_of(len, end)?;
                if raw.is_some() || (seen_raw && len >= self.min_bytes.max(1)) {
                    // raw_data is singular (the last occurrence wins in protobuf): a file that
                    // repeats it is left to tract's reader rather than guessed at
                    return Err(unexpected(format!("a tensor with two raw_data fields at byte {}", self.pos)));
                }
                seen_raw = true;
                if len < self.min_bytes.max(1) {
                    put_varint(&mut rest, field << 3 | wire);
                    put_varint(&mut rest, len);
                    self.copy(len, &mut rest)?;
                } else {
                    raw = Some((self.pos, len));
                    self.skip(len)?;
                }
                self.at(data_end)?;
            } else {
                self.copy_field(field, wire, end, &mut rest)?;
            }
        }
        self.at(end)?;
        let mut tensor = pb::TensorProto::decode(&rest[..])?;
        let external = Some(pb::tensor_proto::DataLocation::External as i32);
        if !tensor.external_data.is_empty() || tensor.data_location == external {
            // a real external-data model: tract's reader resolves its files next to the path
            // it was given (a symlinked bundle included), so it keeps such files
            return Err(unexpected(format!("tensor {:?} has external data of its own", tensor.name)));
        }
        if let Some((offset, len)) = raw {
            let entry = |key: &str, value: String| pb::StringStringEntryProto { key: key.into(), value };
            tensor.external_data =
                vec![entry("location", self.location.clone()), entry("offset", offset.to_string()), entry("length", len.to_string())];
            tensor.data_location = external;
            self.external_bytes += len;
            self.external_tensors += 1;
        }
        Ok(tensor)
    }

    /// Appends one whole field (tag and payload) to `out`, as protobuf would encode it.
    fn copy_field(&mut self, field: u64, wire: u64, end: u64, out: &mut Vec<u8>) -> Result<(), WalkError> {
        put_varint(out, field << 3 | wire);
        match wire {
            VARINT => {
                let v = self.varint()?;
                put_varint(out, v);
            }
            I64 => self.copy(8, out)?,
            I32 => self.copy(4, out)?,
            LEN => {
                let len = self.varint()?;
                self.end_of(len, end)?;
                put_varint(out, len);
                self.copy(len, out)?;
            }
            _ => return Err(unexpected(format!("wire type {wire} (field {field}) at byte {}", self.pos))),
        }
        if self.pos > end {
            return Err(unexpected(format!("field {field} runs past its message at byte {end}")));
        }
        Ok(())
    }

    fn tag(&mut self) -> Result<(u64, u64), WalkError> {
        let tag = self.varint()?;
        if tag >> 3 == 0 {
            return Err(unexpected(format!("field number 0 at byte {}", self.pos)));
        }
        Ok((tag >> 3, tag & 7))
    }

    fn varint(&mut self) -> Result<u64, WalkError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let mut byte = [0u8];
            self.r.read_exact(&mut byte)?;
            self.pos += 1;
            // the 10th byte holds bit 63 only; prost refuses more (encoding/varint.rs)
            if shift == 63 && byte[0] > 1 {
                return Err(unexpected(format!("varint overflows 64 bits at byte {}", self.pos)));
            }
            value |= u64::from(byte[0] & 0x7f) << shift;
            if byte[0] & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(unexpected(format!("varint longer than 10 bytes at byte {}", self.pos)))
    }

    /// The end offset of a payload of `len` bytes starting here, checked against its message's.
    fn end_of(&self, len: u64, end: u64) -> Result<u64, WalkError> {
        match self.pos.checked_add(len) {
            Some(e) if e <= end => Ok(e),
            _ => Err(unexpected(format!("a field of {len} bytes at byte {} runs past byte {end}", self.pos))),
        }
    }

    fn at(&self, end: u64) -> Result<(), WalkError> {
        if self.pos == end {
            Ok(())
        } else {
            Err(unexpected(format!("message ends at byte {} instead of {end}", self.pos)))
        }
    }

    fn copy(&mut self, len: u64, out: &mut Vec<u8>) -> Result<(), WalkError> {
        let start = out.len();
        (&mut self.r).take(len).read_to_end(out)?;
        if (out.len() - start) as u64 != len {
            return Err(WalkError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        self.pos += len;
        Ok(())
    }

    /// Moves past `len` bytes; callers have checked them against the message's end, which is
    /// within the file.
    fn skip(&mut self, len: u64) -> Result<(), WalkError> {
        let n = i64::try_from(len).map_err(|_| unexpected(format!("field of {len} bytes")))?;
        self.r.seek_relative(n)?;
        self.pos += len;
        Ok(())
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: [&str; 7] = [
        "tests/fixtures/tiny/vision_fp32.onnx",
        "tests/fixtures/tiny/vision_int8.onnx",
        "tests/fixtures/tiny/text_fp32.onnx",
        "tests/fixtures/tiny/text_int8.onnx",
        "tests/fixtures/tiny-dyn/vision_int8.onnx",
        "tests/fixtures/tiny-static/vision_int8.onnx",
        "tests/fixtures/tiny-torch-graph/vision_fp32.onnx",
    ];

    fn plain(path: &Path) -> pb::ModelProto {
        tract_onnx::onnx().proto_model_for_path(path).unwrap()
    }

    /// The lean proto with every external reference read back inline, as tract would see it.
    fn inlined(lean: &LeanModel, path: &Path) -> pb::ModelProto {
        let bytes = std::fs::read(path).unwrap();
        let mut proto = lean.proto.clone();
        for t in &mut proto.graph.as_mut().unwrap().initializer {
            if t.data_location == Some(pb::tensor_proto::DataLocation::External as i32) {
                let get = |k: &str| t.external_data.iter().find(|e| e.key == k).unwrap().value.clone();
                assert_eq!(get("location"), path.file_name().unwrap().to_str().unwrap());
                let (offset, len): (usize, usize) = (get("offset").parse().unwrap(), get("length").parse().unwrap());
                t.raw_data = bytes[offset..offset + len].to_vec();
                t.external_data.clear();
                t.data_location = None;
            }
        }
        proto
    }

    /// `data_location: DEFAULT` written out (onnxruntime's quantizer does) reads as absent.
    fn default_location(mut proto: pb::ModelProto) -> pb::ModelProto {
        for t in &mut proto.graph.as_mut().unwrap().initializer {
            if t.data_location == Some(pb::tensor_proto::DataLocation::Default as i32) {
                t.data_location = None;
            }
        }
        proto
    }

    #[test]
    fn every_fixture_reads_to_the_same_protobuf() {
        for f in FIXTURES {
            let path = Path::new(f);
            let lean = LeanModel::read_with(path, 1).unwrap();
            let expected = plain(path);
            let n_raw = expected.graph.as_ref().unwrap().initializer.iter().filter(|t| !t.raw_data.is_empty()).count();
            assert_eq!(lean.external_tensors, n_raw, "{f}: every raw_data left in the file");
            assert!(lean.external_tensors > 10, "{f}: the test reads something");
            let (got, expected) = (default_location(inlined(&lean, path)), default_location(expected));
            assert!(got == expected, "{f}: the lean protobuf differs from tract's decode");
        }
    }

    #[test]
    fn small_weights_stay_inline() {
        let path = Path::new(FIXTURES[0]);
        let lean = LeanModel::read_with(path, 4096).unwrap();
        let all = LeanModel::read_with(path, 1).unwrap();
        assert!(0 < lean.external_tensors && lean.external_tensors < all.external_tensors);
        for t in &lean.proto.graph.as_ref().unwrap().initializer {
            assert_eq!(t.data_location.is_some(), t.raw_data.is_empty() && t.external_data.len() == 3, "{}", t.name);
        }
        assert!(default_location(inlined(&lean, path)) == default_location(plain(path)));
    }

    fn run(mut model: InferenceModel, input: Tensor) -> Vec<Tensor> {
        super::super::encoder::forget_intermediate_shapes(&mut model).unwrap();
        let model = model.with_input_fact(0, InferenceFact::from(input.clone())).unwrap();
        let plan = model.into_optimized().unwrap().into_runnable().unwrap();
        plan.run(tvec!(input.into())).unwrap().into_iter().map(|t| t.into_tensor()).collect()
    }

    fn pixels(size: usize) -> Tensor {
        let n = 3 * size * size;
        Tensor::from_shape(&[1, 3, size, size], &(0..n).map(|i| ((i * 7919) % 255) as f32 / 127.5 - 1.0).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn the_model_runs_bit_identically() {
        for f in [FIXTURES[0], FIXTURES[1], FIXTURES[5], FIXTURES[6]] {
            let path = Path::new(f);
            let lean = LeanModel::read_with(path, 1).unwrap().into_inference_model().unwrap();
            let size = 224; // the tiny checkpoint's image size (siglip.json)
            let a = run(lean, pixels(size));
            let b = run(tract_onnx::onnx().model_for_path(path).unwrap(), pixels(size));
            assert_eq!(a, b, "{f}");
        }
    }

    #[test]
    fn a_symlinked_file_reads_through_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("vision.onnx");
        std::os::unix::fs::symlink(std::fs::canonicalize(FIXTURES[0]).unwrap(), &link).unwrap();
        let (model, lean) = read_inference_model(&link).unwrap();
        assert!(lean);
        assert!(model.nodes().len() > 10);
    }

    #[test]
    fn damaged_files_are_errors_not_panics() {
        let bytes = std::fs::read(FIXTURES[0]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.onnx");
        for cut in [1, 7, bytes.len() / 3, bytes.len() / 2, bytes.len() - 5] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            assert!(LeanModel::read_with(&path, 1).is_err(), "cut at {cut}");
            assert!(read_inference_model(&path).is_err(), "cut at {cut}");
        }
        std::fs::write(&path, b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff").unwrap();
        assert!(matches!(LeanModel::read(&path), Err(ReadError::Unexpected(_))));
        let missing = dir.path().join("missing.onnx");
        assert!(matches!(LeanModel::read(&missing), Err(ReadError::Io { .. })));
        let e = read_inference_model(&missing).unwrap_err().to_string();
        assert!(e.contains("missing.onnx"), "{e}");
    }

    #[test]
    fn a_model_with_its_own_external_data_goes_to_tracts_reader() {
        // onnx's save_as_external_data: the first large weight in a file of its own, which
        // tract resolves next to the path it was given
        let dir = tempfile::tempdir().unwrap();
        let mut proto = plain(Path::new(FIXTURES[0]));
        let t = proto.graph.as_mut().unwrap().initializer.iter_mut().find(|t| t.raw_data.len() > 1024).unwrap();
        std::fs::write(dir.path().join("weights.bin"), &t.raw_data).unwrap();
        let entry = |key: &str, value: String| pb::StringStringEntryProto { key: key.into(), value };
        t.external_data = vec![entry("location", "weights.bin".into()), entry("length", t.raw_data.len().to_string())];
        t.raw_data.clear();
        t.data_location = Some(pb::tensor_proto::DataLocation::External as i32);
        let path = dir.path().join("model.onnx");
        std::fs::write(&path, proto.encode_to_vec()).unwrap();
        assert!(matches!(LeanModel::read_with(&path, 1), Err(ReadError::Unexpected(_))));
        let (model, lean) = read_inference_model(&path).unwrap();
        assert!(!lean);
        let b = run(tract_onnx::onnx().model_for_path(FIXTURES[0]).unwrap(), pixels(224));
        assert_eq!(run(model, pixels(224)), b);
    }

    #[test]
    fn the_default_threshold_keeps_small_weights_inline() {
        for f in FIXTURES {
            let path = Path::new(f);
            let expected = plain(path);
            let large =
                expected.graph.as_ref().unwrap().initializer.iter().filter(|t| t.raw_data.len() as u64 >= EXTERNAL_MIN_BYTES).count();
            let lean = LeanModel::read(path).unwrap();
            assert_eq!(lean.external_tensors, large, "{f}");
            assert!(default_location(inlined(&lean, path)) == default_location(expected), "{f}");
        }
    }

    fn field(out: &mut Vec<u8>, number: u64, payload: &[u8]) {
        put_varint(out, number << 3 | LEN);
        put_varint(out, payload.len() as u64);
        out.extend_from_slice(payload);
    }

    /// A model whose one initializer is `tensor` (wire bytes), written to a file.
    fn model_file(dir: &Path, tensor: &[u8]) -> PathBuf {
        let (mut graph, mut model) = (Vec::new(), Vec::new());
        field(&mut graph, GRAPH_INITIALIZER, tensor);
        field(&mut model, MODEL_GRAPH, &graph);
        let path = dir.join("m.onnx");
        std::fs::write(&path, model).unwrap();
        path
    }

    #[test]
    fn files_protobuf_would_read_differently_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let head = pb::TensorProto { dims: vec![4], data_type: 1, name: "w".into(), ..Default::default() }.encode_to_vec();
        // raw_data twice: protobuf keeps the last one; so must we, or refuse
        for second in [&[][..], &[0u8; 16][..]] {
            let mut t = head.clone();
            field(&mut t, TENSOR_RAW_DATA, &[1u8; 16]);
            field(&mut t, TENSOR_RAW_DATA, second);
            let path = model_file(dir.path(), &t);
            assert!(pb::ModelProto::decode(&std::fs::read(&path).unwrap()[..]).is_ok());
            assert!(
                matches!(LeanModel::read_with(&path, 1), Err(ReadError::Unexpected(_))),
                "second raw_data of {} bytes",
                second.len()
            );
        }
        // an empty raw_data is never made external (tract would read it as absent)
        let mut t = head.clone();
        field(&mut t, TENSOR_RAW_DATA, &[]);
        let lean = LeanModel::read_with(&model_file(dir.path(), &t), 0).unwrap();
        assert_eq!(lean.external_tensors, 0);
        // a varint overflowing 64 bits, which prost refuses
        let mut t = head.clone();
        t.extend_from_slice(&[0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]);
        let path = model_file(dir.path(), &t);
        assert!(pb::ModelProto::decode(&std::fs::read(&path).unwrap()[..]).is_err());
        assert!(matches!(LeanModel::read_with(&path, 1), Err(ReadError::Unexpected(_))));
    }
}
