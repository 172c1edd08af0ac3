//! Simulator of ptychography datasets (filled in by the simulator work).
