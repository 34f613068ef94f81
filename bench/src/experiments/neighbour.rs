//! Noisy neighbours: a victim's workloads alone and beside a neighbour (not yet measured).

use super::Subject;
use crate::model::Neighbour;

pub fn run(subjects: &mut [Subject], progress: &mut dyn FnMut(&str)) -> Neighbour {
    let _ = (subjects, progress);
    Neighbour { rows: Vec::new() }
}
