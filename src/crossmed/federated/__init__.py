"""Federated training with Flower: each site trains on its own data in its own process; only weights and statistics travel.

plan: who takes part and for how long; site_data: a site's own processed folder; site_training: what a site does
with a round's weights; coordinator: the rounds, aggregation and checkpoints on the coordinator; server_app and
client_app: the Flower apps around them; processes: a SuperLink and one SuperNode per site started on this machine.
"""
