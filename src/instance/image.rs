//! Workstation images: `[docker] packages` and `setup` turn the base image into a derived one,
//! built through the engine's build endpoint from a generated Dockerfile, and tagged by a hash
//! of what it is made of, so the same inputs are built once.

use std::sync::{Mutex, OnceLock};

use sha2::{Digest, Sha256};

/// The repository of derived images.
pub const REPOSITORY: &str = "operator-instance";
/// How a build's start and end read in its progress (the activity feed keeps those lines).
pub const BUILDING: &str = "building image";
pub const BUILT: &str = "built image";

/// What a derived image is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    pub base: String,
    /// Debian package names.
    pub packages: Vec<String>,
    /// Shell lines run as root at build time.
    pub setup: Vec<String>,
    /// The network the build's steps run on (`[docker] network`); not part of the tag.
    pub network: String,
}

impl Recipe {
    /// `None` when there is nothing to add: the base is used as it is.
    pub fn from_settings(docker: &crate::config::DockerSettings) -> Option<Self> {
        let recipe = Self {
            base: docker.image.clone(),
            packages: docker
                .packages
                .iter()
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
            setup: docker
                .setup
                .iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            network: docker.network.clone(),
        };
        (!recipe.packages.is_empty() || !recipe.setup.is_empty()).then_some(recipe)
    }

    /// `operator-instance:<first 12 hex of sha256 over base, packages and setup>`.
    pub fn tag(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(self.base.as_bytes());
        for p in &self.packages {
            hash.update(b"\0package\0");
            hash.update(p.as_bytes());
        }
        for s in &self.setup {
            hash.update(b"\0setup\0");
            hash.update(s.as_bytes());
        }
        let hex = hex::encode(hash.finalize());
        format!("{REPOSITORY}:{}", &hex[..12])
    }

    /// The Dockerfile. With no packages it calls no package manager and adds no user, so any
    /// base with `/bin/sh` works.
    pub fn dockerfile(&self) -> String {
        let mut out = format!("FROM {}\nUSER root\n", self.base);
        if !self.packages.is_empty() {
            out.push_str(&format!(
                "RUN apt-get update \\\n && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {} \\\n && rm -rf /var/lib/apt/lists/*\n",
                self.packages.join(" ")
            ));
            out.push_str(
                "RUN getent passwd 1000 >/dev/null || useradd --uid 1000 --user-group --home-dir /workspace --no-create-home --shell /bin/bash agent\n",
            );
        }
        for line in &self.setup {
            // One RUN per line, so a failure names its line; JSON form keeps the line as is.
            let quoted = serde_json::to_string(line).unwrap_or_default();
            out.push_str(&format!("RUN [\"/bin/sh\", \"-c\", {quoted}]\n"));
        }
        out.push_str(&format!("LABEL operator.recipe=\"{}\"\n", self.tag()));
        out
    }

    /// The build context: a tar holding only the Dockerfile.
    pub fn context(&self) -> Vec<u8> {
        let dockerfile = self.dockerfile();
        let mut archive = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(dockerfile.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        archive
            .append_data(&mut header, "Dockerfile", dockerfile.as_bytes())
            .expect("a tar in memory");
        archive.into_inner().expect("a tar in memory")
    }
}

/// The recipes the daemon knows, by tag: an engine missing a derived image builds it from
/// here instead of pulling it.
fn known() -> &'static Mutex<Vec<Recipe>> {
    static KNOWN: OnceLock<Mutex<Vec<Recipe>>> = OnceLock::new();
    KNOWN.get_or_init(|| Mutex::new(Vec::new()))
}

/// Makes a recipe known (the app does, for `[docker]`).
pub fn register(recipe: &Recipe) {
    let mut known = known().lock().expect("recipes lock");
    if !known.contains(recipe) {
        known.push(recipe.clone());
    }
}

/// The recipe of a derived image's tag, if it is one the daemon knows.
pub fn recipe_for(tag: &str) -> Option<Recipe> {
    known()
        .lock()
        .expect("recipes lock")
        .iter()
        .find(|r| r.tag() == tag)
        .cloned()
}

/// The last `n` lines of build output, for an error.
pub fn tail(lines: &[String], n: usize) -> String {
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe(packages: &[&str], setup: &[&str]) -> Recipe {
        Recipe {
            base: "debian:bookworm-slim".into(),
            packages: packages.iter().map(|s| s.to_string()).collect(),
            setup: setup.iter().map(|s| s.to_string()).collect(),
            network: "bridge".into(),
        }
    }

    #[test]
    fn the_tag_follows_every_input() {
        let a = recipe(&["curl"], &[]);
        assert_eq!(a.tag(), recipe(&["curl"], &[]).tag());
        assert_ne!(a.tag(), recipe(&["git"], &[]).tag());
        assert_ne!(a.tag(), recipe(&[], &["curl"]).tag());
        assert!(a.tag().starts_with("operator-instance:") && a.tag().len() == 18 + 12);
    }

    #[test]
    fn without_packages_no_package_manager_and_no_user() {
        let d = recipe(&[], &["echo 'hi' > /etc/x"]).dockerfile();
        assert!(!d.contains("apt-get") && !d.contains("useradd"), "{d}");
        assert!(
            d.contains(r#"RUN ["/bin/sh", "-c", "echo 'hi' > /etc/x"]"#),
            "{d}"
        );
        let d = recipe(&["curl", "git"], &[]).dockerfile();
        assert!(
            d.contains("install -y --no-install-recommends curl git"),
            "{d}"
        );
    }
}
