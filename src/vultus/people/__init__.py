"""People among the faces: discovering groups of unnamed faces that may be one person
(`clustering`); nothing is merged without a person's decision."""
