"""Live face search on the wire: Rekognition stream processors over local sources, read as Kinesis streams.

sources (local streams and the ARNs naming them) -> store (processors, leases, output records in SQLite)
-> runner (claims processors, reads sources, searches faces, appends records) -> service
(`StreamProcessors`, the seven operations) and kinesis (`OutputStreams`, the Kinesis read API);
records (the JSON document each record holds).
"""
