//! `pause ID` and `resume ID`: freeze and thaw every process of a container (the cgroup
//! freezer, see [`crate::cgroups::set_frozen`]).

use anyhow::{Result, bail};

use crate::cgroups;
use crate::error::Error;
use crate::state::{Root, Status};

/// `pause`: freeze every process of a running container.
pub fn pause(root: &Root, id: &str) -> Result<()> {
    let _lock = root.lock(id)?;
    let saved = root.load(id)?;
    match root.status(&saved) {
        Status::Running => {}
        Status::Paused => bail!("container {id} is already paused"),
        Status::Stopped => return Err(Error::NotRunning.into()),
        Status::Created | Status::Creating => {
            bail!("container {id} is not running (created, not started): cannot pause")
        }
    }
    cgroups::set_frozen(&saved.leaves, true)
}

/// `resume`: thaw a paused container.
pub fn resume(root: &Root, id: &str) -> Result<()> {
    let _lock = root.lock(id)?;
    let saved = root.load(id)?;
    match root.status(&saved) {
        Status::Paused => cgroups::set_frozen(&saved.leaves, false),
        Status::Stopped => Err(Error::NotRunning.into()),
        _ => bail!("container {id} is not paused"),
    }
}
