//! Images and plots of results (filled in by the report work).
