//! Teaching a label by example over HTTP: mark the frame shown or upload an image as an
//! example, list/view/delete examples, and see what they suggest (`crate::teach`).
//!
//! Routes (all under the access token):
//! - `GET  /api/cameras/<id>/examples?label=…` → `[ExampleView]`
//! - `POST /api/cameras/<id>/examples {"label","positive"}` → the frame shown (201 `Added`)
//! - `POST /api/cameras/<id>/examples/image` multipart `image`, `label`, `positive` → 201 `Added`
//! - `DELETE /api/cameras/<id>/examples/<n>` → 204
//! - `GET  /api/cameras/<id>/examples/<n>/image.jpg` → the stored image
//! - `GET  /api/cameras/<id>/examples/export?label=…` → the label's examples as one file
//!   (`siglipd examples export` format, images included), to import on another machine
//! - `GET  /api/cameras/<id>/suggest?label=…&precision=0.9` → `teach::Suggestion`
//!
//! Every change refits the camera's labels at once (`LiveCamera::refit`): a label scored from
//! its fit (`score = "calibrated"` / `"examples"`) uses the new model from the next frame.
use std::sync::{Arc, Mutex};

use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::{bad, find_camera, json_error, label_of, path_error, query_error, ApiError, AppState, Job, BODY_TIMEOUT};
use crate::engine::{example_jpeg, Engine};
use crate::examples::{ExampleError, ExampleStore};
use crate::live::LiveCamera;
use crate::model::preprocess::{self, ImageError};
use crate::source::Payload;
use crate::teach::{best_region, example_from_image, suggest, LabelFit, Suggestion, Thresholding};
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/cameras/{id}/examples", get(list_handler).post(mark_handler))
        .route("/api/cameras/{id}/examples/image", post(upload_handler))
        .route("/api/cameras/{id}/examples/export", get(export_handler))
        .route("/api/cameras/{id}/examples/{n}", delete(delete_handler))
        .route("/api/cameras/{id}/examples/{n}/image.jpg", get(image_handler))
        .route("/api/cameras/{id}/suggest", get(suggest_handler))
}

type Store = Arc<Mutex<ExampleStore>>;

fn example_store(s: &AppState) -> Result<&Store, ApiError> {
    s.api.examples.as_ref().ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "examples are kept only by `siglipd run`".into()))
}

fn example_error(e: ExampleError) -> ApiError {
    let status = match e {
        ExampleError::OtherModel { .. } => StatusCode::CONFLICT,
        ExampleError::Full { .. } => StatusCode::INSUFFICIENT_STORAGE,
        ExampleError::NoStateDir => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError(status, e.to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MarkRequest {
    /// Display name or topic id.
    label: String,
    /// true: "this is ⟨label⟩"; false: "this is not ⟨label⟩".
    positive: bool,
    /// The `ts` of the state whose frame is meant (the page sends the one it shows).
    #[serde(default)]
    ts: Option<f64>,
}

/// One example in `GET …/examples`.
#[derive(Serialize)]
struct ExampleView {
    id: u64,
    positive: bool,
    /// Unix seconds.
    created: f64,
    /// The stored image (absent when the example has none).
    image: Option<String>,
}

/// The answer to adding an example.
#[derive(Serialize)]
struct Added {
    id: u64,
    /// The label's marked examples now.
    positives: usize,
    negatives: usize,
    /// The label has a fitted model now (enough of each kind).
    fitted: bool,
}

#[derive(Deserialize)]
struct LabelQuery {
    label: String,
    /// `suggest`: the precision to reach on the examples (default 0.9).
    #[serde(default)]
    precision: Option<f64>,
}

/// Stores an example, refits the camera, and says where the label stands.
async fn add(
    store: Store,
    cam: Arc<LiveCamera>,
    i: usize,
    positive: bool,
    embedding: Vec<f32>,
    jpeg: Option<Vec<u8>>,
) -> Result<Response, ApiError> {
    let created = crate::host::unix_now();
    let added = tokio::task::spawn_blocking(move || {
        let mut store = store.lock().unwrap();
        let id = store.add(&cam.id, &cam.label_slugs[i], positive, embedding, created, jpeg.as_deref())?;
        for (label, why) in cam.refit(&store) {
            tracing::warn!(camera = %cam.id, label = %label, "no model fitted from the marked examples: {why}");
        }
        let list = store.list(&cam.id, &cam.label_slugs[i])?;
        let positives = list.iter().filter(|e| e.positive).count();
        let fitted = cam.fits().get(i).is_some_and(Option::is_some);
        Ok::<_, ExampleError>(Added { id, positives, negatives: list.len() - positives, fitted })
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(example_error)?;
    Ok((StatusCode::CREATED, Json(added)).into_response())
}

/// `POST /api/cameras/<id>/examples {"label","positive"[,"ts"]}`: the frame shown (the one
/// scored at `ts`, the state's timestamp, while it is kept; the latest without `ts`) becomes
/// an example: the embedding of the crop region where the label scores best, and that region.
async fn mark_handler(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<MarkRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(m) = body.map_err(json_error)?;
    let store = example_store(&s)?.clone();
    let cam = find_camera(&s, &id)?;
    let i = label_of(&cam, &m.label)?;
    let scored = cam.scored(m.ts).ok_or_else(|| match m.ts {
        None => ApiError(StatusCode::CONFLICT, format!("camera {id:?} has no scored frame yet")),
        Some(ts) => ApiError(
            StatusCode::CONFLICT,
            format!("no frame scored at ts {ts} is kept (frames are kept {} s): mark the frame shown now", crate::live::KEPT_SECONDS),
        ),
    })?;
    let model = cam.model.get().ok_or_else(|| ApiError(StatusCode::SERVICE_UNAVAILABLE, "the model is still loading".into()))?;
    let fit = cam.fits().get(i).cloned().flatten();
    let region = best_region(&scored.embeddings, &model.labels[i].positive, fit.as_deref());
    let embedding = scored.embeddings[region].clone();
    let crop = cam.crops.get(region).copied();
    let jpeg = tokio::task::spawn_blocking(move || region_jpeg(&scored.frame, crop))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    add(store, cam, i, m.positive, embedding, jpeg).await
}

/// The stored image of an example marked on a frame: the crop region it was embedded from.
fn region_jpeg(p: &Payload, crop: Option<[f64; 4]>) -> Option<Vec<u8>> {
    let img = match p {
        Payload::Encoded(b) => preprocess::decode(b, "the frame", u64::MAX).ok()?,
        Payload::Rgb(img) => img.clone(),
    };
    match crop {
        Some(r) => example_jpeg(&preprocess::crop_region(&img, &r)),
        None => example_jpeg(&img),
    }
}

/// An uploaded image embedded: its unit embedding and the JPEG stored with the example.
type Embedded = (Vec<f32>, Option<Vec<u8>>);

/// An uploaded image to embed as an example, run by the model's thread.
pub struct EmbedJob {
    image: Vec<u8>,
    max_pixels: u64,
    /// The camera's crop regions and the label's text and fit: the example is the region where
    /// the label scores best, as for a marked frame.
    crops: Vec<[f64; 4]>,
    text: Vec<f32>,
    fit: Option<Arc<LabelFit>>,
    reply: oneshot::Sender<Result<Embedded, ApiError>>,
}

impl EmbedJob {
    pub fn run(self, engine: &mut Engine) {
        if self.reply.is_closed() {
            return;
        }
        let result = preprocess::decode(&self.image, "the uploaded image", self.max_pixels)
            .map_err(|e| match e {
                ImageError::TooLarge { .. } => ApiError(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
                _ => bad(e.to_string()),
            })
            .and_then(|img| {
                example_from_image(engine, &img, &self.crops, &self.text, self.fit.as_deref())
                    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))
            });
        let _ = self.reply.send(result);
    }
}

/// The fields of an example upload.
struct Upload {
    image: Vec<u8>,
    label: String,
    positive: bool,
}

async fn read_upload(mut mp: Multipart) -> Result<Upload, ApiError> {
    let (mut image, mut label, mut positive) = (None, None, None);
    while let Some(field) = mp.next_field().await.map_err(super::upload_error)? {
        let name = field.name().unwrap_or_default().to_string();
        let bytes = field.bytes().await.map_err(super::upload_error)?;
        let text = || String::from_utf8(bytes.to_vec()).map_err(|_| bad(format!("field {name:?} is not UTF-8 text")));
        let slot_taken = match name.as_str() {
            "image" => image.replace(bytes.to_vec()).is_some(),
            "label" => label.replace(text()?).is_some(),
            "positive" => {
                let v = match text()?.trim().to_ascii_lowercase().as_str() {
                    "true" | "yes" | "1" | "on" => true,
                    "false" | "no" | "0" | "off" => false,
                    other => return Err(bad(format!("field \"positive\" is {other:?}: send true or false"))),
                };
                positive.replace(v).is_some()
            }
            other => return Err(bad(format!("unknown field {other:?} (expected image, label, positive)"))),
        };
        if slot_taken {
            return Err(bad(format!("field {name:?} is given twice (send one)")));
        }
    }
    Ok(Upload {
        image: image.filter(|b| !b.is_empty()).ok_or_else(|| bad("no image uploaded"))?,
        label: label.ok_or_else(|| bad("no label given"))?,
        positive: positive.ok_or_else(|| bad("say whether the image is the label: positive = true or false"))?,
    })
}

/// `POST /api/cameras/<id>/examples/image` (multipart `image`, `label`, `positive`): the
/// uploaded image, whole, becomes an example (the upload page's "add as example").
async fn upload_handler(State(s): State<AppState>, Path(id): Path<String>, req: Request) -> Result<Response, ApiError> {
    let store = example_store(&s)?.clone();
    let cam = find_camera(&s, &id)?;
    let mp = Multipart::from_request(req, &()).await.map_err(|e| bad(e.body_text()))?;
    let up = tokio::time::timeout(BODY_TIMEOUT, read_upload(mp)).await.map_err(|_| {
        ApiError(StatusCode::REQUEST_TIMEOUT, format!("the request body did not arrive within {} s", BODY_TIMEOUT.as_secs()))
    })??;
    let i = label_of(&cam, &up.label)?;
    let classifier = s
        .api
        .classifier
        .as_ref()
        .ok_or_else(|| ApiError(StatusCode::FORBIDDEN, "uploads are switched off on this server (http.demo = false)".into()))?;
    let model = cam.model.get().ok_or_else(|| ApiError(StatusCode::SERVICE_UNAVAILABLE, "the model is still loading".into()))?;
    let (text, fit) = (model.labels[i].positive.clone(), cam.fits().get(i).cloned().flatten());
    let (reply, rx) = oneshot::channel();
    let job = EmbedJob { image: up.image, max_pixels: s.api.limits.max_pixels, crops: cam.crops.clone(), text, fit, reply };
    classifier.submit(Job::Embed(job))?;
    let (embedding, jpeg) = match tokio::time::timeout(s.api.limits.timeout, rx).await {
        Ok(Ok(r)) => r?,
        Ok(Err(_)) => return Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, "the model thread stopped".into())),
        Err(_) => return Err(ApiError(StatusCode::GATEWAY_TIMEOUT, "embedding the image timed out".into())),
    };
    // an uploaded picture follows `siglipd examples add`'s rule: once per label, one mark
    if let Some(same) =
        jpeg.as_deref().and_then(|j| store.lock().unwrap().with_image(&cam.id, &cam.label_slugs[i], &crate::examples::sha256_hex(j)))
    {
        let sign = if same.positive { "yes" } else { "no" };
        let msg = if same.positive == up.positive {
            format!("this picture is already example {} of {:?} (marked {sign})", same.id, up.label)
        } else {
            format!("this picture is already example {} of {:?} marked {sign}: delete it first", same.id, up.label)
        };
        return Err(ApiError(StatusCode::CONFLICT, msg));
    }
    add(store, cam, i, up.positive, embedding, jpeg).await
}

async fn list_handler(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<LabelQuery>, QueryRejection>,
) -> Result<Json<Vec<ExampleView>>, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    let cam = find_camera(&s, &id)?;
    let i = label_of(&cam, &q.label)?;
    let store = example_store(&s)?.lock().unwrap();
    // listed even when another model made them: to review and delete
    let list = store.view(&id, &cam.label_slugs[i]);
    Ok(Json(
        list.into_iter()
            .map(|e| ExampleView {
                id: e.id,
                positive: e.positive,
                created: e.created,
                image: store.has_image(e.id).then(|| format!("/api/cameras/{id}/examples/{}/image.jpg", e.id)),
            })
            .collect(),
    ))
}

/// `GET /api/cameras/<id>/examples/export?label=…`: the file `siglipd examples export` writes,
/// as a download (`examples = "…"` in a label, or `siglipd examples import`, reads it).
async fn export_handler(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<LabelQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    let cam = find_camera(&s, &id)?;
    let i = label_of(&cam, &q.label)?;
    let slug = cam.label_slugs[i].clone();
    let store = example_store(&s)?.clone();
    let body = tokio::task::spawn_blocking(move || {
        let file = store.lock().unwrap().export(|c, l| c == id && l == slug)?;
        serde_json::to_vec(&file).map_err(|cause| crate::state::StateError::Encode { name: "export".into(), cause }.into())
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(example_error)?;
    let name = format!("attachment; filename=\"{}.examples.json\"", cam.label_slugs[i]);
    let disposition = header::HeaderValue::from_str(&name).map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok((
        [(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json")), (header::CONTENT_DISPOSITION, disposition)],
        body,
    )
        .into_response())
}

async fn delete_handler(State(s): State<AppState>, p: Result<Path<(String, u64)>, PathRejection>) -> Result<StatusCode, ApiError> {
    let Path((id, n)) = p.map_err(path_error)?;
    let cam = find_camera(&s, &id)?;
    let mut store = example_store(&s)?.lock().unwrap();
    if !store.remove(&id, n).map_err(example_error)? {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("camera {id:?} has no example {n}")));
    }
    for (label, why) in cam.refit(&store) {
        tracing::warn!(camera = %id, label = %label, "no model fitted from the marked examples: {why}");
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn image_handler(State(s): State<AppState>, p: Result<Path<(String, u64)>, PathRejection>) -> Result<Response, ApiError> {
    let Path((id, n)) = p.map_err(path_error)?;
    find_camera(&s, &id)?;
    let jpeg = example_store(&s)?
        .lock()
        .unwrap()
        .thumbnail(n)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no image for example {n}")))?;
    Ok(([(header::CONTENT_TYPE, "image/jpeg")], jpeg).into_response())
}

/// `GET /api/cameras/<id>/suggest?label=…&precision=0.9`: what the marked examples say
/// (`teach::suggest`).
async fn suggest_handler(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<LabelQuery>, QueryRejection>,
) -> Result<Json<Suggestion>, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    let cam = find_camera(&s, &id)?;
    let i = label_of(&cam, &q.label)?;
    let target = q.precision.unwrap_or(0.9);
    if !(target > 0.0 && target <= 1.0) {
        return Err(bad(format!("precision is {target}, must be in (0, 1]")));
    }
    let examples = example_store(&s)?.lock().unwrap().list(&id, &cam.label_slugs[i]).map_err(example_error)?;
    let gap = cam.model.get().ok_or_else(|| ApiError(StatusCode::SERVICE_UNAVAILABLE, "the model is still loading".into()))?.gaps[i];
    let history: Vec<f32> = cam.history.lock().unwrap()[i].since(f64::NEG_INFINITY).iter().map(|p| p.raw).collect();
    let current =
        s.api.controls.as_ref().and_then(|c| c.camera(&id)).map(|c| c.thresholds(i)).map(|t| (t.on, t.off)).unwrap_or((0.5, 0.4));
    let how = Thresholding { score: cam.score_kinds[i], gap, current };
    // leave-one-out refits the model once per example: off the runtime
    tokio::task::spawn_blocking(move || {
        let model = cam.model.get().expect("checked above");
        suggest(&examples, model.text(i), how, target, &history)
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map(Json)
    .map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))
}
