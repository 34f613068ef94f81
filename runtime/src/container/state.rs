//! `state ID`: a container's OCI state (see [`crate::state::OciState`]).

use anyhow::Result;

use crate::state::{OciState, Root};

/// `state`: the state as it is now.
pub fn state(root: &Root, id: &str) -> Result<OciState> {
    let saved = root.load(id)?;
    Ok(root.oci_state(&saved))
}
