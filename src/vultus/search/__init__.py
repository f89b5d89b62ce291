"""What a search answers: ranked matches with their calibrated odds (`results`) and the contact
sheet that shows them (`sheet`). The Engine's searching mixin produces these."""
