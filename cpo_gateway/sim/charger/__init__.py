"""A simulated OCPP 1.6J charge point (`simulator.SimCharger`): its state, its wire, the
commands it answers and the queue it keeps while offline."""
