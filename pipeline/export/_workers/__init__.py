"""Child-process scripts of the export stage, run by path (never imported): TensorFlow and the TFLite
Micro runtime live in their own processes so a crash or a too-small arena cannot take the caller down."""
