"""Simulation: seeded MuJoCo rooms with a camera robot, scenarios with success checks, labelled datasets.

Import the parts you need (`lookout.sim.sim.Sim`, `lookout.sim.scenario`, ...); this package module
stays import-light so that `lookout --help` does not load MuJoCo.
"""
