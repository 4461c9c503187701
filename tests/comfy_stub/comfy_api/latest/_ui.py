class PreviewImage:
    def __init__(self, image, animated=False, cls=None, **kwargs):
        self.image = image

    def as_dict(self):
        return {"images": []}


class PreviewText:
    def __init__(self, value: str, **kwargs):
        self.value = value

    def as_dict(self):
        return {"text": (self.value,)}
