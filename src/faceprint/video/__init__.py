"""Faces in video: Rekognition Video face detection and face search jobs, live search, and their pipeline.

decode (PyAV frames and VideoMetadata) -> pipeline (detect, track, embed best frames, group persons)
-> jobs (durable SQLite job store) / worker (runs jobs) -> service (`VideoJobs`, the four operations);
live (search on a stream as it plays); detection (keyframe scans + re-detection around tracks);
matcher (one embedding against a collection).
"""
