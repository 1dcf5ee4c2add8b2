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
    let built = fleet.build_image(&recipe, force, &progress).await?;
    let tag = recipe.tag();
    Ok(if built {
        format!("built {tag} from {}", recipe.base)
    } else {
        format!("{tag} is already built (use --force to build it again)")
    })
}
