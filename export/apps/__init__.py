"""The demo apps' Python side: installing exported artifacts into android_demo/ and ios_demo/, and
recording the golden cases their core tests replay."""
