//! `GET /docs`: an interactive page for the API, like FastAPI's.
//!
//! Swagger UI, whose files `swagger-ui-redist` carries inside the crate, so
//! nothing is fetched at build or run time (its online validator is off
//! too). The page renders `/openapi.json`, which the live guest serves: a
//! swapped guest's API shows up without a restart.

use std::collections::HashMap;

use swagger_ui_redist::{SwaggerUi, SwaggerUiStaticFile};

use crate::telemetry::metrics::HOST_DOCS as DOCS;

/// The document the page renders, served by the guest.
const OPENAPI: &str = "/openapi.json";

/// The page and its files, ready to serve.
pub struct Docs {
    page: String,
    files: HashMap<String, Asset>,
}

/// One of the page's files.
#[derive(Clone, Copy)]
pub struct Asset {
    /// Its bytes.
    pub bytes: &'static [u8],
    /// Its `Content-Type`.
    pub content_type: &'static str,
}

impl Docs {
    /// Renders the page once.
    pub fn new() -> anyhow::Result<Self> {
        let mut ui = SwaggerUi::new();
        ui.title("Inlet API");
        ui.config().urls([OPENAPI]).validator_url("none");
        let mut files = HashMap::new();
        for &(file, bytes) in SwaggerUi::static_files() {
            let path = format!("{DOCS}/{}", file.file_name());
            ui.override_file_path(file, path.clone());
            files.insert(
                path,
                Asset {
                    bytes,
                    content_type: content_type(file),
                },
            );
        }
        let page = ui
            .serve()
            .map_err(|e| anyhow::anyhow!("cannot render the docs page: {e}"))?;
        Ok(Self { page, files })
    }

    /// The HTML page.
    pub fn page(&self) -> &str {
        &self.page
    }

    /// The file at `path` (`/docs/<file>`), if the page has one there.
    pub fn asset(&self, path: &str) -> Option<Asset> {
        self.files.get(path).copied()
    }
}

fn content_type(file: SwaggerUiStaticFile) -> &'static str {
    let name = file.file_name();
    if name.ends_with(".css") {
        "text/css; charset=utf-8"
    } else if name.ends_with(".js") {
        "text/javascript; charset=utf-8"
    } else {
        "image/png"
    }
}
