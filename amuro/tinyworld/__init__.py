"""The tiny world: a seeded, generated universe of people, places and events.

It provides the pre-training corpus and a task suite mirroring the paper's task types, designed
so that the paper's dichotomy can appear: the facts and question–answer patterns of the world
occur in the corpus (learnable in pre-training), while the NLI, paraphrase, summarization and
question-generation patterns never do (learnable only by fine-tuning).
"""
