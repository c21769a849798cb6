use anyhow::Result;

pub fn refresh() -> Result<()> {
    anyhow::bail!("not written yet")
}
