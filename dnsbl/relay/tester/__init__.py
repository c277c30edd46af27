"""The relay tester: the envelope battery, a raw SMTP client, and the probe that runs one test."""
