"""A simulated OCPP 2.0.1 charging station (`simulator.SimCharger201`): its state, the requests
it answers, and its link on the `ocpp` library's v201 ChargePoint. The offline queue and the
websocket side are the 1.6 simulator's."""
