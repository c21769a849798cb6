//! `cargo xtask sim power`: a year of real weather through pew-power's manager on a simulated
//! node. The simulation itself lives in `pew_sim::year`; this only parses arguments, runs it,
//! prints the table and writes the chart.

use std::path::PathBuf;

use anyhow::{Context, Result};
use pew_power::chemistry::{BatterySpec, Chemistry};
use pew_sim::plot::render_svg;
use pew_sim::weather::{SiteName, Weather};
use pew_sim::year::{YearConfig, simulate_steady};

use crate::process::workspace_root;

/// Battery chemistries as spelled in configuration.
#[derive(Clone, Copy, clap::ValueEnum)]
enum ChemistryArg {
    #[value(name = "li-ion")]
    LiIon,
    #[value(name = "lifepo4")]
    LiFePo4,
}

impl From<ChemistryArg> for Chemistry {
    fn from(chemistry: ChemistryArg) -> Self {
        match chemistry {
            ChemistryArg::LiIon => Chemistry::LiIon,
            ChemistryArg::LiFePo4 => Chemistry::LiFePo4,
        }
    }
}

#[derive(clap::Args)]
pub struct PowerArgs {
    /// Weather site: greensboro or sand-point.
    #[arg(long, default_value = "greensboro")]
    site: SiteName,
    /// Rated panel power, W.
    #[arg(long, default_value_t = 60.0)]
    panel_w: f64,
    /// Nominal battery capacity, Wh.
    #[arg(long, default_value_t = 185.0)]
    battery_wh: f64,
    /// Battery chemistry.
    #[arg(long, value_enum, default_value_t = ChemistryArg::LiIon)]
    chemistry: ChemistryArg,
    /// Node power while computing, W.
    #[arg(long, default_value_t = 5.0)]
    load_w: f64,
    /// Node power when idle, W.
    #[arg(long, default_value_t = 2.7)]
    idle_w: f64,
    /// Simulation step, s.
    #[arg(long, default_value_t = 300)]
    step_s: i64,
    /// Where to write the SVG chart [default: out/sim-power-<site>.svg in the workspace].
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn power(args: PowerArgs) -> Result<()> {
    let weather =
        Weather::site(args.site).with_context(|| format!("loading the {} weather", args.site))?;
    let defaults = YearConfig::default();
    let config = YearConfig {
        panel_w: args.panel_w,
        battery: BatterySpec {
            chemistry: args.chemistry.into(),
            capacity_wh: args.battery_wh,
            ..defaults.battery.clone()
        },
        load_w: args.load_w,
        idle_w: args.idle_w,
        step_s: args.step_s,
        ..defaults
    };
    let report = simulate_steady(&weather, &config)?;

    let station = weather.station();
    let title = format!(
        "pew year simulation, {} ({}): {} W panel, {} Wh battery, {} W load",
        args.site, station.state, config.panel_w, config.battery.capacity_wh, config.load_w
    );
    println!("{title}\n{report}");

    let out = args
        .out
        .unwrap_or_else(|| workspace_root().join(format!("out/sim-power-{}.svg", args.site)));
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&out, render_svg(&report, &title))
        .with_context(|| format!("writing {}", out.display()))?;
    println!("chart: {}", out.display());
    Ok(())
}
