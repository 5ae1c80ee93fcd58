"""The demo bundle shipped with kpdoctor (`kpdoctor scan --demo`); see README.md here for how it was made."""
