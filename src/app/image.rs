//! `operator image build [--force]`: the workstation image of `[docker] packages` and `setup`,
//! built on every engine of the config, with the build's steps printed as they come.

use anyhow::bail;

use crate::config::Settings;
use crate::instance::InstanceBackend;
use crate::instance::image::Recipe;

pub async fn image_build(settings: &Settings, force: bool) -> anyhow::Result<String> {
    let Some(recipe) = Recipe::from_settings(&settings.docker) else {
        bail!(
            "[docker] packages and setup are empty: instances use {} as it is, and there is nothing to build",
            settings.docker.image
        );
    };
    let fleet =
        crate::instance::fleet_from_settings(&settings.docker, &settings.state_dir().join("run"))
            .map_err(anyhow::Error::msg)?;
    let progress = |line: String| println!("{line}");
    let built = fleet.build_image(&recipe, force, &progress).await;
    let tag = recipe.tag();
    let summary = match &built {
        Ok(true) => format!("built {tag} from {}", recipe.base),
        Ok(false) => format!("{tag} is already built (use --force to build it again)"),
        Err(e) => format!("building {tag} failed: {e}"),
    };
    // The activity feed hears of a build from the command line as of one an instance caused.
    if !matches!(built, Ok(false)) {
        match crate::store::Store::open_and_migrate(&settings.state_dir()).await {
            Ok(store) => {
                store.record(crate::store::NewActivity {
                    kind: "image.build".into(),
                    actor: "operator image build".into(),
                    summary: summary.clone(),
                    detail: Some(serde_json::json!({ "image": tag, "ok": built.is_ok() })),
                    ..Default::default()
                });
                store.close().await;
            }
            Err(e) => eprintln!("warning: the build is not in the activity feed: {e}"),
        }
    }
    built?;
    Ok(summary)
}
