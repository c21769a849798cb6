use anyhow::Result;

#[derive(clap::Args)]
pub struct PowerArgs {}

pub fn power(_args: PowerArgs) -> Result<()> {
    anyhow::bail!("not written yet")
}
