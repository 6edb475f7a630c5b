//! Outputs: run folders, PNG frames and the MP4.
